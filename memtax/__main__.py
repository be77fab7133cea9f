from memtax.cli import main

raise SystemExit(main())
