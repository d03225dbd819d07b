# The baseline of bench/run.py: the simplest S3 storage plugin one could write (no naming rules, no
# error handling, no configuration checks). Not part of the product.
import json
import sys

import orthanc

config = json.loads(orthanc.GetConfiguration())["NaiveS3"]
sys.path.insert(0, config["SitePackages"])
import boto3  # noqa: E402

s3 = boto3.client("s3", endpoint_url=config["Endpoint"], region_name="us-east-1", aws_access_key_id="bench",
                  aws_secret_access_key="bench", config=boto3.session.Config(s3={"addressing_style": "path"}))


def create(uuid, content_type, data):
    s3.put_object(Bucket=config["Bucket"], Key=uuid, Body=data)


def read(uuid, content_type):
    return s3.get_object(Bucket=config["Bucket"], Key=uuid)["Body"].read()


def remove(uuid, content_type):
    s3.delete_object(Bucket=config["Bucket"], Key=uuid)


orthanc.RegisterStorageArea(create, read, remove)
