# The shared users database of a pool (chart only: in Compose each server has its own): brought to MLflow's
# auth schema and given its admin once, before the server starts, so replicas starting together do not race
# on the migration (pods that still race here retry, and the second attempt finds both done).
from mlflow.server.auth import bootstrap_admin_user

bootstrap_admin_user()
print("users database at head, admin present")
