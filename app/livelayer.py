"""Whether the runners' live state can reach the pages of this process.

Two ways: a channel layer that crosses processes (Redis), or a runner in this very process
(``runtasks --serve``, which sets ``runner_in_process``). The dashboard and ``/health`` ask; both the
web side and ``serve`` import this, so neither imports the other.
"""

from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

#: True in a process that runs a runner and the web server together (``app.serve`` sets it).
runner_in_process = False

#: What to configure for that, in any project (REDIS_URL means something only to this repository's settings).
CROSS_PROCESS_LAYER = (
    "e.g. channels-redis (pip install 'django-conductor[redis]' and channels_redis.core.RedisChannelLayer "
    "as its BACKEND; in Conductor's own project, REDIS_URL does it)"
)


def layer_reaches_other_processes(layer: Any = None) -> bool:
    layer = layer or get_channel_layer()
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)
