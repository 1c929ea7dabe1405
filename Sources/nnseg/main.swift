import ArgumentParser
NNSeg.main()
