import os, sqlalchemy
uri = os.environ["MLFLOW_BACKEND_STORE_URI"]
engine = sqlalchemy.create_engine(uri, isolation_level="AUTOCOMMIT")
auth = os.environ["MLFLOW_AUTH_DATABASE"]
with engine.connect() as conn:
    if not conn.execute(sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": auth}).first():
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{auth}"'))
        print(f"database {auth} created")
if not sqlalchemy.inspect(engine).get_table_names():
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
    SqlAlchemyStore(uri)
    print("an empty database: MLflow's tables created")
engine.dispose()
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
AuthStore().init_db(uri.rsplit("/", 1)[0] + "/" + auth)
print(f"auth schema of {auth} at head")
os.execvp("mlflow", ["mlflow", "db", "upgrade", uri])
