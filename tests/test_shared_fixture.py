"""A shared fixture that fails is built once, and every test that needs it fails at once
naming the cause (in every pytest-xdist worker), instead of rebuilding it per test."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # end to end: trains in processes of its own

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_a_failing_shared_fixture_fails_its_dependents_fast_naming_the_cause(tmp_path):
    counter = tmp_path / "builds.txt"
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        import pytest
        from shared_fixture import shared_once

        def _build(root):
            with open({str(counter)!r}, "a") as f:
                f.write("built\\n")
            raise RuntimeError("the fixture model's int8 agreement was 90.00%")

        @pytest.fixture(scope="session")
        def expensive(tmp_path_factory):
            return shared_once(tmp_path_factory, "expensive", _build)
    """))
    (tmp_path / "test_dependents.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_uses_it(expensive, i):
            pass

        def test_independent():
            pass
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider",
                           "-rE", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    assert "1 passed, 6 errors" in out, out[-3000:]
    assert counter.read_text() == "built\n"  # one build for the whole session, both workers
    errors = [line for line in out.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == 6, out[-3000:]
    assert out.count("the fixture model's int8 agreement was 90.00%") >= 6, out[-3000:]
