"""The command line (`forecast-mlops`) and the client."""
