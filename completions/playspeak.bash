# bash completion for playspeak: verbs, their options, and the values an option or argument
# allows. Written by `python -m playspeak.completion` from the CLI's parsers: do not edit.
# Install: copy to ~/.local/share/bash-completion/completions/playspeak (or
# /usr/share/bash-completion/completions/playspeak), or source it from ~/.bashrc.

_playspeak() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local verb=${COMP_WORDS[1]} words=
    COMPREPLY=()
    if ((COMP_CWORD == 1)); then
        mapfile -t COMPREPLY < <(compgen -W "run check-config demo say stop skip pause resume ping status voices cancel volume watch cache devices serve-local -h --help --version" -- "$cur")
        return
    fi
    # an option's value: its choices, else nothing (bash completes file names)
    case "$verb $prev" in
        "run --socket") words="" ;;
        "run --config") words="" ;;
        "run --device") words="" ;;
        "run --log-level") words="debug info warning error" ;;
        "check-config --socket") words="" ;;
        "check-config --config") words="" ;;
        "check-config --device") words="" ;;
        "check-config --log-level") words="debug info warning error" ;;
        "demo --config") words="" ;;
        "demo --device") words="" ;;
        "demo --log-level") words="debug info warning error" ;;
        "demo --wav") words="" ;;
        "say --socket") words="" ;;
        "say --voice") words="" ;;
        "say --speed") words="" ;;
        "say --model") words="" ;;
        "say --priority") words="important message text notification progress" ;;
        "say --volume") words="" ;;
        "say --id") words="" ;;
        "say --pitch") words="" ;;
        "say --pitch-range") words="" ;;
        "say --punctuation") words="none some most all" ;;
        "say --capitals") words="none spell icon" ;;
        "say --language") words="" ;;
        "stop --socket") words="" ;;
        "skip --socket") words="" ;;
        "pause --socket") words="" ;;
        "resume --socket") words="" ;;
        "ping --socket") words="" ;;
        "status --socket") words="" ;;
        "voices --socket") words="" ;;
        "cancel --socket") words="" ;;
        "cancel --id") words="" ;;
        "volume --socket") words="" ;;
        "watch --socket") words="" ;;
        "cache --socket") words="" ;;
        "cache --voice") words="" ;;
        "serve-local --host") words="" ;;
        "serve-local --port") words="" ;;
        "serve-local --first-byte-delay") words="" ;;
        "serve-local --realtime-factor") words="" ;;
        "serve-local --token-lifetime") words="" ;;
        "serve-local --connection-lifetime") words="" ;;
        "serve-local --synth") words="auto espeak generated piper" ;;
        "serve-local --certfile") words="" ;;
        "serve-local --keyfile") words="" ;;
        "serve-local --client-auth-rate") words="" ;;
        "serve-local --client-connections") words="" ;;
        "serve-local --client-requests") words="" ;;
        "serve-local --auth-delay") words="" ;;
        "serve-local --connect-delay") words="" ;;
        "serve-local --idle-timeout") words="" ;;
        "serve-local --auth-rate") words="" ;;
        "serve-local --auth-status") words="" ;;
        *) words=- ;;
    esac
    if [ "$words" != - ]; then
        [ -n "$words" ] && mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
        return
    fi
    words=
    if [[ $cur == -* ]]; then
        case $verb in
        run) words="-h --help --socket --config --device --log-level" ;;
        check-config) words="-h --help --socket --config --device --log-level" ;;
        demo) words="-h --help --config --device --log-level --wav" ;;
        say) words="-h --help --socket --wait --voice --speed --model --priority --volume --id --pitch --pitch-range --punctuation --capitals --spelling --language --chime --no-chime --cache --no-cache" ;;
        stop) words="-h --help --socket" ;;
        skip) words="-h --help --socket" ;;
        pause) words="-h --help --socket" ;;
        resume) words="-h --help --socket" ;;
        ping) words="-h --help --socket" ;;
        status) words="-h --help --socket" ;;
        voices) words="-h --help --socket" ;;
        cancel) words="-h --help --socket --id" ;;
        volume) words="-h --help --socket" ;;
        watch) words="-h --help --socket" ;;
        cache) words="-h --help --socket --voice" ;;
        devices) words="-h --help" ;;
        serve-local) words="-h --help --host --port --first-byte-delay --realtime-factor --token-lifetime --connection-lifetime --synth --certfile --keyfile --client-auth-rate --client-connections --client-requests --realistic --auth-delay --connect-delay --idle-timeout --auth-rate --auth-status" ;;
        esac
    elif ((COMP_CWORD == 2)); then
        case $verb in
        cache) words="stats clear warm" ;;
        esac
    fi
    [ -n "$words" ] && mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}
complete -o default -F _playspeak playspeak
