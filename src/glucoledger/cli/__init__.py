"""glucoledger.cli"""
