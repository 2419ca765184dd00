"""Stage stage_code: each stage script's code (the script and the imdb_rnn modules it imports), hashed
into the one file that stage depends on."""

from imdb_rnn.pipeline import stage_main
from imdb_rnn.stage_code import stage_code

if __name__ == "__main__":
    stage_main(__doc__, stage_code, paths=("stages", "package", "out"))
