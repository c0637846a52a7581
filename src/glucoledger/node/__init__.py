"""glucoledger.node"""
