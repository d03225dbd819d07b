#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the plugin for real: a local S3 server (moto) on
# 127.0.0.1, Orthanc with the plugin, one sample DICOM uploaded and the object it became in the bucket.
# Orthanc stays up with its URL printed; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec .venv/bin/python scripts/demo.py "$@"
