"""SageMaker container entrypoints (processing, training, evaluation) and their /opt/ml layout."""
