"""Where a corpus build's tasks run: this machine, a Ray cluster, or SLURM job arrays (datatrove's
executors run codemix's passes); each calls `finish` (merge the parts, write corpus.json) when done."""

import importlib.util
import shutil
from collections.abc import Callable

from codemix.data.tasks import BuildPlan, SlurmSettings, passes, run_local, run_ray, submit_slurm
from codemix.errors import ConfigError

Progress = Callable[[str], None]


class LocalExecutor:
    """The tasks on this machine, `workers` processes at a time (datatrove's LocalPipelineExecutor)."""

    def __init__(self, workers: int = 2):
        self.workers = workers

    def run(self, plan: BuildPlan, finish: Callable[[], None], progress: Progress) -> None:
        self.run_tasks(plan)
        finish()
        shutil.rmtree(plan.work)

    def run_tasks(self, plan: BuildPlan) -> None:
        run_local(plan, self.workers)


class RayExecutor(LocalExecutor):
    """The tasks on the Ray cluster, `workers` at a time (-1: as many as it runs), then the merge here
    (datatrove's RayPipelineExecutor). ray is not one of codemix's dependencies: it is installed where
    a cluster runs Ray."""

    def __init__(self, workers: int = -1):
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--executor ray: the ray package is not installed in this environment "
                              "(pip install 'ray[default]' beside codemix); use --executor local or slurm")
        super().__init__(workers)

    def run_tasks(self, plan: BuildPlan) -> None:
        run_ray(plan, self.workers)


class SlurmExecutor:
    """The tasks as SLURM job arrays, one per pass, each depending on the one before, and a last
    job that merges the parts and writes corpus.json (datatrove's SlurmPipelineExecutor)."""

    def __init__(self, settings: SlurmSettings):
        # checked before the build spends anything: submitting is its last step
        if shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm: no sbatch on PATH; run the build where SLURM's commands are "
                              "(a login node) or use --executor local")
        self.settings = settings

    def run(self, plan: BuildPlan, finish: Callable[[], None], progress: Progress) -> None:
        job = submit_slurm(plan, self.settings, finish)
        progress(f"submitted to SLURM: {', '.join(passes(plan))} and finish (last job {job}); "
                 f"logs and task markers in {plan.work}")


Executor = LocalExecutor | SlurmExecutor
