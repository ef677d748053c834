from kezek.migrations import run_env
from services.queue.models import Base

run_env(Base.metadata)
