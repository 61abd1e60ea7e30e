"""`python -m bench`: run the benchmark scripts in this folder (currently the time-budget check)."""
from .budget import main

raise SystemExit(main())
