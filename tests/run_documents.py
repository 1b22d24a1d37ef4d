"""Bad run documents shared by the local and the starter Lambda's tests: (body, what the error names)."""

from __future__ import annotations

import json

from pipeline_code.engine.settings import SETTINGS_MAX_BYTES

BAD_SETTINGS = {
    "unknown key": (json.dumps({"data": {"frequency": "MS"}}), "data.frequency: unknown setting"),
    "unknown section": (json.dumps({"model": {}}), "model: unknown section"),
    "wrong type": (json.dumps({"cv": {"window": "long"}}), "cv.window: expected an integer"),
    "out of range": (json.dumps({"gate": {"min_improvement": 1.5}}), "gate.min_improvement: must be in [0, 1)"),
    "frequency the data does not follow": (json.dumps({"data": {"freq": "MS"}}),
                                           "data.freq: the data does not follow MS"),
    "season length the search cannot use": (
        json.dumps({"data": {"season_length": 4}, "search": {"fourier_k": [3]}}),
        "search.fourier_k: no value fits data.season_length 4"),
    "season length below one period": (json.dumps({"data": {"season_length": 0.5}}),
                                       "data.season_length: must be a number >= 1 (1: no season), got 0.5"),
    "families none of which fits the data's season": (
        json.dumps({"search": {"families": ["arima"]}}),
        "search.families: no family offers a model for these settings: 'arima' offers no model for "
        "data.season_length 52.1786"),
    "a window-only family that is not a family": (json.dumps({"search": {"window_only": ["prophet"]}}),
                                                   "search.window_only: must be distinct family names of"),
    "a fill value outside the data's range": (
        json.dumps({"series": {"fill_middle": "value", "fill_value": 1e300}}),
        "series.fill_value: a number in [1e-100, 1e+100] (the data's range) is needed"),
    "JSON that does not parse": ('{"data": {"horizon": 12,}}', "invalid JSON at line 1, column 25"),
    "a number JSON does not have": ('{"cv": {"window": Infinity}}', "invalid JSON: Infinity is not a JSON number"),
    "NaN": ('{"cv": {"window": NaN}}', "invalid JSON: NaN is not a JSON number"),
    "a number too large for a float": ('{"cv": {"window": 1e400}}', "cv.window: expected an integer, got a number inf"),
    "an integer too long for a float": ('{"search": {"serve_top": 1' + "0" * 400 + "}}",
                                        "search.serve_top: expected an integer, got a number inf"),
    "an integer past Python's digit limit": ('{"series": {"instances": 1' + "0" * 5000 + "}}",
                                             "series.instances: expected an integer, got a number inf"),
    "a key twice": ('{"search": {"families": ["theta"]}, "search": {}}',
                    "invalid JSON: key 'search' appears twice in one object"),
    "nesting deeper than the parser goes": ("[" * 30000 + "]" * 30000, "invalid JSON: nested too deeply"),
    "file over the size limit": (json.dumps({"data": {}, "pad": "x" * SETTINGS_MAX_BYTES}),
                                 f"the limit is {SETTINGS_MAX_BYTES}"),
}
