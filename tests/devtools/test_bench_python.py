"""The python benchmarks' package: the function raw Celery calls, as an installable wheel
(the benchmark itself runs with `make bench`)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from devtools.bench import team_function
from devtools.bench.python_tasks import MODULE, wheel
from runs.tasktypes.packages import wheel_info


def test_the_uploaded_wheel_holds_the_function_raw_celery_calls() -> None:
    filename, data = wheel("bench-python", "1.0.7")
    info = wheel_info(data, filename)
    assert (info.name, info.version, info.top_level) == ("bench-python", "1.0.7", (MODULE,))
    assert info.requires_dist == ()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read(f"{MODULE}/__init__.py").decode()
    assert text == Path(team_function.__file__).read_text()
    assert wheel("bench-python", "1.0.7") == (filename, data)  # the same bytes again
