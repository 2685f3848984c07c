"""fh_rl.agents"""
