# The Compose stacks' one-shots `migrate` and `create-bucket` (stacks/common/postgres.yaml, s3.yaml): the image's
# plugin prepares the stores its environment names (stacks/images/mlflow/plugin/mlflowkit_server/prepare.py).
import runpy
runpy.run_module("mlflowkit_server.prepare", run_name="__main__")
