"""The Optuna study a sweep works on: its storage, the settings it was started with, and which
trial to run next.

Any number of sweep processes (on one machine or many, through one database) share a study;
the database is the only coordinator. A trial a process stopped (Ctrl-C) is failed and
queued again by that process; one whose process died is failed, once its heartbeat is stale,
by whichever process looks next, and queued again too. A retry keeps its trial's run dir, so
it resumes from the trial's last checkpoint.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from puffertrain.errors import UserError

if TYPE_CHECKING:
    import optuna

HEARTBEAT_SECONDS = 10
STALE_SECONDS = 60
"""A running trial whose process has not written a heartbeat for this long is failed."""
SETTINGS = "puffertrain"
"""The study's user attribute holding the sweep's settings."""
RETRY_OF = "retry_of"
SURPLUS = "surplus"
OPEN_ATTEMPTS = 5
SQLITE_TIMEOUT_SECONDS = 60
"""How long a process waits for another's write to an SQLite study before it gives up."""


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's notes that heartbeats are experimental and meant for optimize():
    the sweep records them itself, around its ask/tell loop."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        yield


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue ``trial``'s params again, as a retry of its first attempt, in its run dir."""
    first = trial.user_attrs.get(RETRY_OF, trial.number)
    attrs = {RETRY_OF: first, **{k: v for k, v in trial.user_attrs.items() if k == "run_dir"}}
    study.enqueue_trial(trial.params, user_attrs=attrs)


def storage_errors() -> tuple[type[Exception], ...]:
    """What Optuna and SQLAlchemy raise when the study's database fails (gone, locked,
    unreachable): its own failed commits, and reads that reach SQLAlchemy's errors."""
    import optuna
    import sqlalchemy.exc

    return (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


def heartbeat(
    storage: optuna.storages.RDBStorage, study: optuna.Study, trial: optuna.Trial
) -> Callable[[], None]:
    """A function recording that ``trial``'s process is alive.

    Optuna records heartbeats only inside ``Study.optimize``, which the sweep cannot use (its
    trials are child processes, run J at a time with an ask/tell loop). So the sweep calls the
    storage's own methods, which Optuna documents as the storage's interface rather than the
    user's: they are used here alone, on the storage the sweep opened itself."""
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    return lambda: storage.record_heartbeat(trial_id)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage (SQLite, PostgreSQL, MySQL...) with heartbeats; ``UserError``
    with the reason where it cannot be opened."""
    import optuna
    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = {}
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):  # SQLAlchemy's default driver differs by version
        url = f"postgresql+psycopg://{rest}"
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_SECONDS}
    attempts = 0
    while True:
        try:
            with quiet_optuna():
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=STALE_SECONDS,
                    heartbeat_stale_trial_callback=retry,
                )
            if url.startswith("sqlite"):
                _serialize_sqlite(storage.engine)
            return storage
        except ModuleNotFoundError as error:
            hint = " (pip install 'puffertrain[postgres]')" if "psycopg" in str(error) else ""
            raise UserError(f"--storage {scheme}://{rest}: {error}{hint}") from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError, ImportError) as error:
            attempts += 1
            if _creating_tables_too(error) and attempts < OPEN_ATTEMPTS:
                time.sleep(1.0)  # another process is creating the same tables: theirs will do
                continue
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            raise UserError(f"--storage {scheme}://{rest}: cannot open it: {reason}") from None


def _serialize_sqlite(engine: Any) -> None:
    """Make every SQLite transaction take the write lock when it begins.

    Python's sqlite3 driver starts a transaction only at the first write, so Optuna's "read the
    trial, then mark it running" is two steps another process can come between: two sweep
    processes then pop the same queued trial and both run it (optuna/optuna#4621). Beginning
    with ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe for pysqlite) makes the read and the write one
    step; PostgreSQL and MySQL get the same from Optuna's ``SELECT ... FOR UPDATE``."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "connect")
    def _driver_leaves_transactions_alone(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_with_the_write_lock(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners would keep the driver's way


def _creating_tables_too(error: Exception) -> bool:
    """Whether ``error`` says another process created the study tables at the same moment
    (PostgreSQL: a duplicate key in its catalogue; SQLite: the table already exists)."""
    import sqlalchemy.exc

    return isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in str(error)


def open_study(
    storage: optuna.storages.RDBStorage,
    name: str,
    direction: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    settings: dict[str, Any],
) -> tuple[optuna.Study, bool]:
    """The study ``name`` (created if new; only its creator records ``settings``), and whether
    this call created it. ``UserError`` if it was started with other settings."""
    import optuna

    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction=direction,
            sampler=sampler,
            pruner=pruner,
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    else:
        study.set_user_attr(SETTINGS, settings)
        return study, True
    saved = study.user_attrs.get(SETTINGS)
    mine = json.loads(json.dumps(settings))
    if saved is not None and saved != mine:
        differ = sorted(key for key in mine if mine[key] != saved.get(key))
        raise UserError(
            f"study '{name}' was started with other {', '.join(differ)} ({saved_text(saved)}); "
            "give the same ones to continue it, or another --study"
        )
    return study, False


def saved_text(settings: dict[str, Any]) -> str:
    flags = " ".join(settings.get("flags", []))
    return f"flags: {flags or 'none'}; objective {settings.get('objective')}"


def fresh_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that are neither retries nor surplus: the ones --trials counts."""
    return [
        trial
        for trial in study.get_trials(deepcopy=False)
        if RETRY_OF not in trial.user_attrs and SURPLUS not in trial.user_attrs
    ]


def next_trial(study: optuna.Study, trials: int) -> optuna.Trial | None:
    """The next trial to run: a queued one (a retry, or the starting config), else a new one
    while the study has fewer than ``trials``; None when there is none.

    Two processes may both create a trial for the last place: the one whose trial came later
    marks it surplus (failed, never run) and runs none."""
    import optuna

    with quiet_optuna():
        optuna.storages.fail_stale_trials(study)
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if not waiting and len(fresh_trials(study)) >= trials:
            return None
        trial = study.ask()
    if RETRY_OF in trial.user_attrs:  # --trials counts its first attempt
        return trial
    # numbers follow the order in which the database created the trials
    earlier = [other for other in fresh_trials(study) if other.number < trial.number]
    if len(earlier) >= trials:
        trial.set_user_attr(SURPLUS, True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    return trial
