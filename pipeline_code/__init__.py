"""forecast-mlops: the forecasting engine, its SageMaker entrypoints, the local pipeline and serving."""

__version__ = "0.1.0"
