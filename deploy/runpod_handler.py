"""RunPod queue-based serverless worker: ``python deploy/runpod_handler.py``.

The handler streams the same chunks as /v1/chat (service/runpod_worker.py).
For RunPod's load-balancing endpoints no shim is needed: the image's own
``python -m service`` serves /v1/chat and /ping (docs/deploying.md).
"""

import runpod

from service.runpod_worker import run_worker

if __name__ == "__main__":
    run_worker(runpod.serverless.start)
