"""glucoledger.ordering"""
