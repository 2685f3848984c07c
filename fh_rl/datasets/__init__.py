"""fh_rl.datasets"""
