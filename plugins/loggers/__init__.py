"""Built-in run loggers: TensorBoard and MLflow, each an optional extra."""
