"""`memtax analyze` names its own flag, not the library's option, when features hold NaN/inf."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import predict
from memtax.cli import main


def test_nonfinite_features_name_the_flag(tmp_path, capsys):
    df, _ = predict.synthetic_table(500, seed=3)
    df.loc[7, "cont_ppl"] = np.nan
    f = tmp_path / "feats.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f)
    args = ["analyze", "--features", str(f), "--out", str(tmp_path / "r"), "--n-boot", "5",
            "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cont_ppl" in err and "pass --drop-nonfinite" in err and "nan_policy" not in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
