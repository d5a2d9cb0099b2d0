"""benchmarks/gpu_check.py runs end to end before a GPU is lent: its --dry-run takes every check at toy
shapes on the CPU and records a result for each."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_records_every_check(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] is True
    for check in ("model", "fsdp2", "export"):  # attention's kernels may refuse (cuDNN on a CPU): per kernel below
        assert "error" not in json.dumps(result[check]), result[check]
    assert "ms" in result["attention"]["codemix_attention"]
    assert all(row["loss_finite"] and row["estimate_gib"] > 0 for row in result["model"])
    assert result["fsdp2"]["steps"] == 2
    sharded = result["fsdp2"]["sharded_checkpoint"]  # saved through torch.distributed.checkpoint, resumed
    assert sharded["problem"] is None and sharded["bytes"] > 0 and sharded["resumed_to_step"] == 3
    assert result["export"]["max_abs_logit_difference"] < 1e-4
