from podnet.dns.app import main

main()
