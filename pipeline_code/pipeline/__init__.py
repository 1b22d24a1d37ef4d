"""The pipeline: stages, the local runner, the registry and the run settings; built on the engine."""
