# The baseline of bench/run.py: the simplest storage plugin one could write with each SDK (no naming
# rules, no error handling, no configuration checks). Not part of the product.
import json
import sys

import orthanc

configuration = json.loads(orthanc.GetConfiguration())

if "NaiveS3" in configuration:
    config = configuration["NaiveS3"]
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

elif "NaiveAzure" in configuration:
    config = configuration["NaiveAzure"]
    sys.path.insert(0, config["SitePackages"])
    from azure.storage.blob import ContainerClient  # noqa: E402

    container = ContainerClient.from_connection_string(config["ConnectionString"], config["Container"])

    def create(uuid, content_type, data):
        container.upload_blob(uuid, data, overwrite=True)

    def read(uuid, content_type):
        return container.download_blob(uuid).readall()

    def remove(uuid, content_type):
        container.delete_blob(uuid)

else:
    config = configuration["NaiveGcs"]
    sys.path.insert(0, config["SitePackages"])
    from google.auth.credentials import AnonymousCredentials  # noqa: E402
    from google.cloud import storage  # noqa: E402

    bucket = storage.Client(project="bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": config["Endpoint"]}).bucket(config["Bucket"])

    def create(uuid, content_type, data):
        bucket.blob(uuid).upload_from_string(data)

    def read(uuid, content_type):
        return bucket.blob(uuid).download_as_bytes()

    def remove(uuid, content_type):
        bucket.blob(uuid).delete()

orthanc.RegisterStorageArea(create, read, remove)
