"""One upload, poll and download through a client generated from docs/openapi.json by
openapi-python-client (run by tests/tests/generated_client.rs).

usage: roundtrip.py CLIENT_PARENT BASE_URL API_KEY INPUT OUTPUT
Prints one JSON line: the job's final status, its id, and the refused upload's status and code.
"""
import io
import json
import sys
import time

parent, base_url, key, input_path, output_path = sys.argv[1:6]
sys.path.insert(0, parent)

from mediaq_client import AuthenticatedClient  # noqa: E402
from mediaq_client.api.jobs import create_job, download_output, get_job  # noqa: E402
from mediaq_client.models import ErrorBody, Job  # noqa: E402
from mediaq_client.types import File  # noqa: E402

client = AuthenticatedClient(base_url=base_url, token=key, timeout=60.0)

with open(input_path, "rb") as f:
    created = create_job.sync_detailed(client=client, body=File(payload=f, file_name="clip.webm"), filename="clip.webm")
assert created.status_code == 202, (created.status_code, created.content)
job = created.parsed
assert isinstance(job, Job), created.content

deadline = time.monotonic() + 120
while True:
    polled = get_job.sync_detailed(job.id, client=client)
    assert polled.status_code == 200, (polled.status_code, polled.content)
    job = polled.parsed
    if str(job.status.value if hasattr(job.status, "value") else job.status) in ("succeeded", "failed", "canceled", "expired"):
        break
    assert time.monotonic() < deadline, "the job did not finish in time"
    time.sleep(0.5)

status = str(job.status.value if hasattr(job.status, "value") else job.status)
if status == "succeeded":
    downloaded = download_output.sync_detailed(job.id, client=client)
    assert downloaded.status_code == 200, downloaded.status_code
    with open(output_path, "wb") as out:
        out.write(downloaded.content)

# A refused upload parses into the documented error body.
refused = create_job.sync_detailed(client=client, body=File(payload=io.BytesIO(b"not a video at all")))
assert isinstance(refused.parsed, ErrorBody), refused.content
print(json.dumps({
    "status": status,
    "id": str(job.id),
    "refused_status": refused.status_code,
    "refused_code": refused.parsed.error.code,
}))
