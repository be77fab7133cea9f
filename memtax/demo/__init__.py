"""`memtax demo`: the whole study on this machine, offline, on a CPU.

    result = run_demo("demo_out")                    # what `memtax demo` / `make demo` run
    result = run_demo("out/", model="smollm2")       # SmolLM2-135M (GGUF) over the same text
    result = run_pipeline(model, tokenizer, documents, "out/", samples=300)   # any model/corpus
    result = run_suite_study(documents, "out/", config=suite.SuiteConfig(...))

The default route trains a miniature Pythia suite (`memtax.suite`, `suite.DEMO_CONFIG`) on this
machine's own text (`memtax.demo_corpus`: the standard library's source and the installed
packages' license/readme/metadata files, one document per file) and studies every checkpoint of
every size on Pythia's samples, the first 32 + 32 tokens of each training sequence, with the
index over the exact training stream (`memtax.demo.suite_study`). A second run reuses the suite.
The single-model route (`memtax.demo.pipeline`) samples windows of the text instead.

Modules: `corpus` (documents, tokens, windows), `stages` (timing, the output folder),
`pipeline` (one model over text), `suite_study` (a suite), `study` (features, taxonomy, report),
`summary` (`DemoResult`, the terminal summary), `entry` (`run_demo`: the routes).

Output folder (written under a temporary name beside it and renamed when complete; a previous
demo output there is replaced, any other non-empty folder is refused):

    documents.parquet   (single model) doc_id, name, part, n_chars, n_tokens, token_start
    suite/              (suite) the trained suite, reused by the next run
    index/              the corpus index (features.CorpusIndex.open)
    samples.parquet     sample_id, tokens (list<int32>), text; the single-model route also
                        doc_id, offset, is_doc_start (sample_id = global token position); for a
                        suite sample_id is the training sequence's index
    scores/             engine score folder (single model), or one per checkpoint
                        (scores/<model>@step<N>/)
    checkpoints.parquet (suite) model, step, sample_id, exact_match, match_len
    generate.parquet    sample_id, match_len, exact_match, gen_score, gen_match_count,
                        gen_edit_distance for the memorized rows and near misses
    features.parquet    score columns + feature columns, keyed by sample_id
    categories.parquet  sample_id, exact_match, category
    report/index.html   the report (figures/, tables/); written whatever was memorized: a
                        section that needs memorized rows says how many there were
    summary.json, summary.txt   counts, examples, stage timings (what the terminal shows)

Every table is keyed by `sample_id` and holds the same ids (generate.parquet a subset).
"""

from memtax.demo.corpus import (
    DEFAULT_SEED,
    DEFAULT_START_SHARE,
    TextDocument,
    choose_windows,
    tokenize_documents,
)
from memtax.demo.entry import (
    DEFAULT_OUT,
    SMOLLM2,
    SMOLLM2_FILE,
    SMOLLM2_LABEL,
    SMOLLM2_PACKAGE,
    default_cpu_dtype,
    run_demo,
    smollm2_gguf,
)
from memtax.demo.pipeline import DEFAULT_SAMPLES, run_pipeline
from memtax.demo.stages import MARKER, Stage
from memtax.demo.suite_study import run_suite_study
from memtax.demo.summary import DemoResult, format_summary

__all__ = [
    "DEFAULT_SAMPLES",
    "DEFAULT_SEED",
    "DEFAULT_START_SHARE",
    "DEFAULT_OUT",
    "MARKER",
    "SMOLLM2",
    "SMOLLM2_FILE",
    "SMOLLM2_LABEL",
    "SMOLLM2_PACKAGE",
    "TextDocument",
    "Stage",
    "DemoResult",
    "smollm2_gguf",
    "default_cpu_dtype",
    "choose_windows",
    "tokenize_documents",
    "run_pipeline",
    "run_suite_study",
    "run_demo",
    "format_summary",
]
