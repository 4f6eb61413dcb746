from fastconv.bench.run import main

main()
