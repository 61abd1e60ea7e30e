"""Built-in strategies: one module each, registered with @harness.methods.registry.strategy.

The runner imports every module in this package, so adding a strategy is adding a file.
"""
