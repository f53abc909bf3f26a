"""How tests are run and reported, shared by the recorder (`prt run`) and QA: the test runners a
command can name (runners), the reporters loaded into the test process (harness/), and the
parsing of their reports (reports)."""
