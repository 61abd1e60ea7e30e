"""`python -m bench`: the performance suite (bench/suite.py); `python -m bench.budget` for the time budget."""
from .suite import main

raise SystemExit(main())
