"""Numbers from records: metrics, statistics, costs and the recommendation. No model, no torch."""
