"""README's first command: moto S3 + Debian's Orthanc + this plugin, a sample upload, then wait."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import botocore.config
from pydicom.data import get_testdata_file

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from support.servers import free_port, stop_process, wait_http  # noqa: E402


def wait_up(url, process, what):
    """Waits for ``url`` to answer (tests/support/servers.wait_http); a server that does not: exits, saying which."""
    try:
        wait_http(url, process, timeout=60)
    except RuntimeError as exc:
        raise SystemExit(f"{what}: {exc}") from None


def main():
    workdir = tempfile.mkdtemp(prefix="orthanc-objstore-demo-")
    s3_port, http_port = free_port(), free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    processes = []

    def stop(*_):
        for process in reversed(processes):
            stop_process(process, timeout=30)
        print("\nstopped Orthanc and the S3 server")
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    moto = subprocess.Popen([os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    processes.append(moto)
    wait_up(f"{s3_url}/moto-api/", moto, "the S3 server (moto)")
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="demo",
                      aws_secret_access_key="demo-secret", config=botocore.config.Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="orthanc-demo")
    print(f"S3 server (moto) on {s3_url}, bucket 'orthanc-demo'")

    plugin = subprocess.run([os.path.join(BIN, "orthanc-objstore"), "plugin-path"], check=True,
                            capture_output=True, text=True).stdout.strip()
    configuration = {
        "Name": "orthanc-objstore-demo",
        "HttpPort": http_port, "DicomServerEnabled": False,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "StorageDirectory": os.path.join(workdir, "storage"), "IndexDirectory": os.path.join(workdir, "index"),
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancPython.so"],
        "PythonScript": plugin,
        "AwsS3Storage": {"BucketName": "orthanc-demo", "Region": "us-east-1", "Endpoint": s3_url,
                         "VirtualAddressing": False, "AccessKey": "demo", "SecretKey": "demo-secret"},
    }
    config_path = os.path.join(workdir, "orthanc.json")
    with open(config_path, "w") as file:
        json.dump(configuration, file, indent=2)
    log_path = os.path.join(workdir, "orthanc.log")
    with open(log_path, "w") as log:
        orthanc = subprocess.Popen(["/usr/sbin/Orthanc", config_path], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=workdir, start_new_session=True)
    processes.append(orthanc)
    url = f"http://127.0.0.1:{http_port}"
    wait_up(f"{url}/system", orthanc, f"Orthanc (log: {log_path})")

    sample = get_testdata_file("CT_small.dcm", download=False)
    with open(sample, "rb") as file:
        request = urllib.request.Request(f"{url}/instances", data=file.read(), method="POST")
    answer = json.loads(urllib.request.urlopen(request).read())
    print(f"uploaded {os.path.basename(sample)}: Orthanc instance {answer['ID']}")
    info = json.loads(urllib.request.urlopen(f"{url}/instances/{answer['ID']}/attachments/dicom/info").read())
    print(f"its DICOM attachment {info['Uuid']} became these objects in the bucket:")
    for item in s3.list_objects_v2(Bucket="orthanc-demo").get("Contents", []):
        print(f"  s3://orthanc-demo/{item['Key']}  ({item['Size']} bytes)")
    print(f"\nOrthanc is running at {url}/ (Explorer: {url}/app/explorer.html), log: {log_path}")
    print("Press Ctrl-C to stop Orthanc and the S3 server.")
    while orthanc.poll() is None:
        time.sleep(1)
    stop()


if __name__ == "__main__":
    main()
