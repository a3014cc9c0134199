"""Generic Linux networking shared by the plugins and the runtime: the rtnetlink batcher
(rtnl.py), network-namespace utilities (nsutil.py) and per-plugin kernel names and
ownership marks (names.py).  A plugin's own data plane lives in its folder
(e.g. container_runtime.plugins.bridge.dataplane); nothing here owns a kernel object.
"""
