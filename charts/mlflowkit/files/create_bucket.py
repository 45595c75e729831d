import os, boto3, botocore.exceptions
s3, bucket = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"]), os.environ["S3_BUCKET"]
try:
    s3.head_bucket(Bucket=bucket)
    print(f"bucket {bucket} exists")
except botocore.exceptions.ClientError:
    s3.create_bucket(Bucket=bucket)
    print(f"bucket {bucket} created")
