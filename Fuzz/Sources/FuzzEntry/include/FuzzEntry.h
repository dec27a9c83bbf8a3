// Entry points of the fuzz executables. SwiftPM links every executable with `main` as an
// alias of `<Module>_main`, which a target built `-parse-as-library` (as libFuzzer needs)
// never emits; these hand control to libFuzzer's driver instead.
int FuzzFrame_main(int argc, char **argv);
int FuzzMessage_main(int argc, char **argv);
int FuzzMembership_main(int argc, char **argv);
int FuzzConfig_main(int argc, char **argv);
