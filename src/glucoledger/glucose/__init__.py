"""glucoledger.glucose"""
