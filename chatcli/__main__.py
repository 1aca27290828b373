from chatcli.worker import launch

launch()
