"""`python -m pipeline_code.cli`: the forecast-mlops command line."""

import sys

from pipeline_code.cli.main import main

sys.exit(main())
