from alembic import context

import callcenter.models  # noqa: F401  (registers every table)
import ivr.models  # noqa: F401  (the imports back from callcenter besides main.py: autogenerate sees their tables)
import callcenter.notify.models  # noqa: F401  (its outbox names work-order tables: not in callcenter.models)
import workorders.models  # noqa: F401
import callcenter.privacy.models  # noqa: F401  (above IVR and work orders: not in callcenter.models)
import callcenter.care.models  # noqa: F401  (above IVR and work orders: not in callcenter.models)
import callcenter.care.visit_models  # noqa: F401
from callcenter.db import make_engine
from callcenter.models import metadata

config = context.config


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
