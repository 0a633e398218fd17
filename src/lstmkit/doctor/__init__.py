"""`lstmkit doctor`: find why a hand-written LSTM or BiLSTM differs.

Wrap the code in an adapter and call `diagnose`:

    from lstmkit import doctor

    report = doctor.diagnose(doctor.FunctionAdapter(my_lstm, init=my_init))
    print(report.format_table())

Each check is an independent probe: the gate order, the forget bias, the
default initialization, four padding probes, three BiLSTM probes, the
order of (c, h) in the state and the first step that diverges from
lstmkit's reference. `docs/doctor.md` describes the adapter contract and
every check.
"""

from lstmkit.doctor.adapters import (
    Adapter,
    FunctionAdapter,
    KerasLayerAdapter,
    ModuleAdapter,
    UserCodeError,
)
from lstmkit.doctor.runner import CHECK_IDS, diagnose
from lstmkit.doctor.report import (
    ERROR,
    FAULT,
    PASS,
    SKIPPED,
    WARN,
    CheckResult,
    Report,
)

__all__ = [
    "Adapter",
    "CHECK_IDS",
    "CheckResult",
    "ERROR",
    "FAULT",
    "FunctionAdapter",
    "KerasLayerAdapter",
    "ModuleAdapter",
    "PASS",
    "Report",
    "SKIPPED",
    "UserCodeError",
    "WARN",
    "diagnose",
]
