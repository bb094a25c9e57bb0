"""The embedded orchestrator behind ``eagerstep dev``: an Inngest-compatible server in pure Python."""

from eagerstep.engine.clock import Clock, ManualClock, RealClock
from eagerstep.engine.engine import Engine, EngineError
from eagerstep.engine.server import EngineServer, serve

__all__ = ["Clock", "Engine", "EngineError", "EngineServer", "ManualClock", "RealClock", "serve"]
