"""fh_rl.envs"""
