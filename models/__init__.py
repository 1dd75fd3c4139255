"""teenet.models: the functions that run inside the compute enclave, and their release rules.

Pure functions over Arrow tables and validated parameters (psi, aggregate, train,
predict); no crypto, no transport. See each function's module docstring for its params.
"""

from teenet.models.api import FUNCTIONS, run_function, validate_job
from teenet.models.spec import (MEDIA_ARROW, MEDIA_JSON, MEDIA_ONNX, Function, InputSpec, PartyInput,
                                Release, ReleaseRequest, ReleaseRules)

__all__ = ["FUNCTIONS", "run_function", "validate_job", "Function", "InputSpec", "PartyInput",
           "Release", "ReleaseRequest", "ReleaseRules", "MEDIA_ARROW", "MEDIA_JSON", "MEDIA_ONNX"]
