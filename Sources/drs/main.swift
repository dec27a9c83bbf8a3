import ArgumentParser
import SessionReplication
print("drs")
