import importlib, os, threading, time, sqlalchemy
schema_code = threading.Thread(target=importlib.import_module, args=("mlflow.store.db.utils",))
schema_code.start()
uri = os.environ["MLFLOW_BACKEND_STORE_URI"]
engine = sqlalchemy.create_engine(uri)
for attempt in range(300):
    try:
        tables = sqlalchemy.inspect(engine).get_table_names()
        break
    except sqlalchemy.exc.OperationalError:
        if attempt == 299:
            raise
        time.sleep(0.2)
if tables:
    os.execvp("mlflow", ["mlflow", "db", "upgrade", uri])
schema_code.join()
import mlflow.store.db.utils
mlflow.store.db.utils._initialize_tables(engine)
print("an empty database: MLflow's tables created at this version's schema")
