"""Loaded at start-up by every Python process the tests start (`tests.support.timetravel`
puts this folder first on PYTHONPATH): when the test process travels in time, so does the
child — `o2c serve`, `o2c run`, `o2c demo` and the processes they spawn in turn.

`O2C_TEST_CLOCK_SHIFT` is the test process's clock minus the real clock, in seconds, at the
moment the child was started; the child keeps the same shift and lets time flow. Only the
tests set it; the product never reads it.
"""

import os

_shift = os.environ.get("O2C_TEST_CLOCK_SHIFT")
if _shift:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_shift), tick=True).start()
