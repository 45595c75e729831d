import os, sqlalchemy
uri = os.environ["MLFLOW_BACKEND_STORE_URI"]
engine = sqlalchemy.create_engine(uri)
empty = not sqlalchemy.inspect(engine).get_table_names()
engine.dispose()
if empty:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
    SqlAlchemyStore(uri)
    print("an empty database: MLflow's tables created at this version's schema")
else:
    os.execvp("mlflow", ["mlflow", "db", "upgrade", uri])
