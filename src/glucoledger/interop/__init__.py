"""glucoledger.interop"""
