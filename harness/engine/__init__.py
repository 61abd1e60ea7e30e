"""Config -> cells -> records: planning a run, running each cell, writing results, resuming."""
