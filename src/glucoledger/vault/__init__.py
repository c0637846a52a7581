"""glucoledger.vault"""
